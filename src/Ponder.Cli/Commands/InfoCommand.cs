using System.CommandLine;
using Ponder.Models;
using Spectre.Console;

namespace Ponder.Cli.Commands;

/// <summary><c>ponder info</c>: architecture, shapes, parameter counts and tensor dtypes of a model file.</summary>
public static class InfoCommand
{
    public static Command Create()
    {
        var model = CliCommon.ModelOption();
        var tensors = new Option<bool>("--tensors") { Description = "List every tensor" };
        var cmd = new Command("info", "Show a model's architecture, shapes, parameter counts and dtypes") { model, tensors };
        cmd.SetAction((r, ct) => CliCommon.Guard(() =>
        {
            string path = r.GetValue(model)!;
            using ITensorSource source = path.StartsWith("random:", StringComparison.Ordinal)
                ? RandomModels.Source(path["random:".Length..])
                : ModelFiles.Open(path);
            var c = source.Config;
            var grid = new Grid().AddColumn().AddColumn();
            void Row(string k, object v) => grid.AddRow(new Markup($"[grey]{k}[/]"), new Text(v.ToString() ?? ""));
            Row("source", source.Location);
            Row("architecture", $"{c.Architecture} ({c.Head})");
            Row("vocab", c.Vocab);
            Row("dModel", c.DModel);
            Row("nLayers", c.NLayers);
            Row("nHeads / nKvHeads / headDim", $"{c.NHeads} / {c.NKvHeads} / {c.HeadDim}");
            Row("dFf", c.DFf);
            Row("rope theta", c.RopeTheta + (c.RopeScaling is { } s ? $" (llama3 scaling x{s.Factor})" : ""));
            Row("rms eps", c.RmsNormEps);
            Row("max positions", c.MaxPositions);
            Row("tied embeddings", c.TiedEmbeddings);
            Row("QKV bias", c.QkvBias);
            if (c.SharedValueHead) Row("shared value head", "value_head.weight [1, dModel]: head row vocab is the step score");
            Row("parameters (total)", $"{c.TotalParameters:N0}");
            Row("parameters (non-embedding)", $"{c.NonEmbeddingParameters:N0}");
            var dtypes = source.Tensors.Values.GroupBy(t => t.Type).Select(g => $"{g.Key} x{g.Count()}");
            Row("dtypes", string.Join(", ", dtypes));
            AnsiConsole.Write(grid);
            if (r.GetValue(tensors))
            {
                var table = new Table().AddColumns("tensor", "dtype", "shape");
                foreach (var t in source.Tensors.Values.OrderBy(t => t.Name, StringComparer.Ordinal))
                    table.AddRow(t.Name, t.Type.ToString(), t.ShapeText);
                AnsiConsole.Write(table);
            }
            return Task.FromResult(0);
        }));
        return cmd;
    }
}

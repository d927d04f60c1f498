using Ponder.Cache;
using Ponder.Scheduling;

namespace Ponder.Tests.Scheduling;

/// <summary>Round packing: chunked prefill next to decodes, KV pressure, cancellation of queued work.</summary>
public sealed class StepSchedulerTests
{
    [Fact]
    public async Task LongPrefillIsChunkedAndDoesNotStallADecode()
    {
        using var rig = new SchedulingRig(prefixIndex: false, options: new SchedulerOptions { MaxTokensPerForward = 8 });
        var s = rig.Scheduler;
        using var decodeRequest = s.CreateRequest(name: "decode");
        using var prefillRequest = s.CreateRequest(name: "prefill");
        var decodeSeq = new Sequence(rig.PolicyPool);
        var prefillSeq = new Sequence(rig.PolicyPool);
        decodeRequest.Own(decodeSeq);
        prefillRequest.Own(prefillSeq);
        Assert.True((await s.SubmitAsync(decodeRequest, rig.Policy, decodeSeq, [1, 2, 3], new float[SchedulingRig.Vocab])).Completed);
        long rounds0 = s.Rounds;
        Task<WorkResult> prefill, decode;
        Task<long> decodeRound;
        lock (s.SyncRoot) // the next round waits for both submissions
        {
            prefill = s.SubmitAsync(prefillRequest, rig.Policy, prefillSeq, [.. Enumerable.Range(0, 40).Select(i => i % SchedulingRig.Vocab)], new float[SchedulingRig.Vocab]);
            decode = s.SubmitAsync(decodeRequest, rig.Policy, decodeSeq, [4], new float[SchedulingRig.Vocab]);
            // Read on the pump as the decode completes, before its next round (the test thread may run much later).
            decodeRound = decode.ContinueWith(_ => s.Rounds, TaskContinuationOptions.ExecuteSynchronously);
        }
        Assert.True((await decode).Completed);
        Assert.Equal(rounds0 + 1, await decodeRound);            // the decode ran in the first round, beside the first chunk
        Assert.True((await prefill).Completed);
        // 7 rows left beside the decode, then 33 more in chunks of 8: 1 + 5 forwards.
        Assert.Equal(6, prefillRequest.Report().Models.Single().Forwards);
        Assert.Equal(40, prefillSeq.ComputedLength);
    }

    [Fact]
    public async Task FullKvCacheDefersAndThenFailsClearlyWhenNothingCanRun()
    {
        using var rig = new SchedulingRig(policyBlocks: 4, prefixIndex: false);
        var s = rig.Scheduler;
        using var request = s.CreateRequest();
        var a = new Sequence(rig.PolicyPool);
        var b = new Sequence(rig.PolicyPool);
        Assert.True((await s.SubmitAsync(request, rig.Policy, a, [.. Enumerable.Range(0, 12)], new float[SchedulingRig.Vocab])).Completed);
        var e = await Assert.ThrowsAsync<KvCacheFullException>(() => s.SubmitAsync(request, rig.Policy, b, [.. Enumerable.Range(0, 8)], new float[SchedulingRig.Vocab]));
        Assert.Contains("KV cache of model 'policy' is full", e.Message);
        Assert.Equal(0, b.Length);                               // nothing appended
        lock (s.SyncRoot) a.Dispose();
        Assert.True((await s.SubmitAsync(request, rig.Policy, b, [.. Enumerable.Range(0, 8)], new float[SchedulingRig.Vocab])).Completed);
        lock (s.SyncRoot) b.Dispose();
        rig.AssertNoLeaks();
    }

    [Fact]
    public async Task CancellingARequestFailsItsQueuedWorkStopsChargingAndFreesWhatItOwns()
    {
        using var rig = new SchedulingRig(prefixIndex: false, options: new SchedulerOptions { MaxTokensPerForward = 1 });
        var s = rig.Scheduler;
        using var cts = new CancellationTokenSource();
        var request = s.CreateRequest(name: "cancelled", cancellationToken: cts.Token);
        var seq = new Sequence(rig.PolicyPool);
        request.Own(seq);
        Task<WorkResult> work;
        lock (s.SyncRoot)
        {
            work = s.SubmitAsync(request, rig.Policy, seq, [.. Enumerable.Range(0, 250).Select(i => i % SchedulingRig.Vocab)], new float[SchedulingRig.Vocab]);
        }
        while (s.Rounds < 3) Thread.Yield(); // 250 rounds of one row: far from done
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => work);
        long spent = request.Budget.Spent.Flops.Total;
        Assert.True(request.IsClosed);
        Assert.True(seq.IsDisposed);
        Assert.True(spent < rig.Policy.Counter.Chunk(250, 0, 1).Total, "the whole prefill was charged although it was cancelled");
        var late = new Sequence(rig.PolicyPool);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => s.SubmitAsync(request, rig.Policy, late, [1], new float[SchedulingRig.Vocab]));
        late.Dispose();
        Assert.Equal(spent, request.Budget.Spent.Flops.Total);
        rig.AssertNoLeaks();
    }

    [Fact]
    public void BadSubmissionsNameTheProblem()
    {
        using var rig = new SchedulingRig(prefixIndex: false);
        using var request = rig.Scheduler.CreateRequest();
        using var seq = new Sequence(rig.PolicyPool);
        Assert.Contains("outside model 'policy''s vocabulary", Assert.Throws<ArgumentOutOfRangeException>(() => { _ = rig.Scheduler.SubmitAsync(request, rig.Policy, seq, [SchedulingRig.Vocab], default); }).Message);
        Assert.Contains("nothing to compute", Assert.Throws<ArgumentException>(() => { _ = rig.Scheduler.SubmitAsync(request, rig.Policy, seq, [], default); }).Message);
        Assert.Contains($"writes {SchedulingRig.Vocab} per token", Assert.Throws<ArgumentException>(() => { _ = rig.Scheduler.SubmitAsync(request, rig.Policy, seq, [1], new float[3]); }).Message);
        Assert.Contains("not in model 'prm''s pool", Assert.Throws<ArgumentException>(() => { _ = rig.Scheduler.SubmitAsync(request, rig.Prm, seq, [1], default); }).Message);
    }
}

#!/usr/bin/env pwsh
# Ponder build entry point (PowerShell twin of build.sh).
#   ./build.ps1            restore and build everything (Release)
#   ./build.ps1 test       build and run the whole test suite
#   ./build.ps1 demo       run the main demo
#   ./build.ps1 bench ...  run the BenchmarkDotNet suites
#   ./build.ps1 ponder ... run the ponder CLI
#   ./build.ps1 pack [DIR] [ARGS] pack Ponder, Ponder.Kernels and Ponder.Extensions.DependencyInjection (with .snupkg symbols; default artifacts/packages); e.g. ARGS -p:Version=1.2.3
param([Parameter(Position = 0)][string]$Command = 'build', [Parameter(ValueFromRemainingArguments = $true)][string[]]$Rest = @())
$ErrorActionPreference = 'Stop'
Set-Location $PSScriptRoot
$env:DOTNET_CLI_TELEMETRY_OPTOUT = '1'; $env:DOTNET_NOLOGO = '1'
$cli = 'src/Ponder.Cli/bin/Release/net10.0/Ponder.Cli.dll'
function Invoke-Build { dotnet build Engine.sln -c Release -nologo -v minimal @args; if ($LASTEXITCODE) { exit $LASTEXITCODE } }
switch ($Command) {
  'build' { Invoke-Build }
  'test' {
    Invoke-Build
    dotnet test Engine.sln -c Release --no-build -nologo -v minimal --logger 'console;verbosity=minimal' @Rest
    exit $LASTEXITCODE
  }
  'demo' { Invoke-Build; dotnet $cli demo @Rest; exit $LASTEXITCODE }
  'bench' { dotnet run -c Release --project bench/Ponder.Bench -- @Rest; exit $LASTEXITCODE }
  'pack' {
    $out = if ($Rest.Count -gt 0) { $Rest[0] } else { 'artifacts/packages' }
    $extra = if ($Rest.Count -gt 1) { $Rest[1..($Rest.Count - 1)] } else { @() }
    foreach ($p in 'src/Ponder/Ponder.csproj', 'kernels/Ponder.Kernels/Ponder.Kernels.csproj', 'src/Ponder.Extensions.DependencyInjection/Ponder.Extensions.DependencyInjection.csproj') {
      dotnet pack $p -c Release -nologo -v minimal -o $out -p:EnableSourceLink=true @extra; if ($LASTEXITCODE) { exit $LASTEXITCODE }
    }
    Get-ChildItem "$out/*.nupkg", "$out/*.snupkg" | ForEach-Object { $_.FullName }
  }
  'ponder' { if (-not (Test-Path $cli)) { Invoke-Build }; dotnet $cli @Rest; exit $LASTEXITCODE }
  default { Write-Error "usage: ./build.ps1 [build|test|demo|bench|pack [DIR]|ponder ARGS]"; exit 2 }
}

"""The command line: ``paradoxplex node|upstream-echo|admin|cluster|health`` and the tools
behind them (the dev fleet, the echo upstream, health checks, workers)."""

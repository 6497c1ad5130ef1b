"""The `aitbc` command line: the only place that prints with Rich or calls asyncio.run."""

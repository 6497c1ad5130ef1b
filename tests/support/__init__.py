"""The test harness, one place for what many tests start: a served coordinator (`served`: in a thread, or
`aitbc serve` as a process in a `Stack`), miner processes and the CLI (`stack`; a command left running, read line by line: `running_cli`), the one protocol miner double
(`protocol_miner`), and waiting for things (`waiting`, `processes`). `plugin` gives its pytest fixtures."""

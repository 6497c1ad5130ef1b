"""The AI worker: a long-lived, sandboxed process that runs our model code (embedding, text generation) on
tenant input, so that a bug a crafted input finds in a tokenizer or model loader meets a process with no
keys, no state folder, no network and only the current job's files, instead of the miner itself.

`sandboxing` says what the worker's sandbox holds, `messages` the JSON-lines protocol between miner and
worker, `serve` and `tasks` are the worker's side, `pool` the miner's side."""

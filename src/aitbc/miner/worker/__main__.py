"""`python -m aitbc.miner.worker`: the worker process, started by the miner inside its sandbox."""

from aitbc.miner.worker.serve import main

main()

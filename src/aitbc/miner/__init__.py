"""The miner agent: registers, claims jobs, runs them with its runtimes, uploads signed results."""

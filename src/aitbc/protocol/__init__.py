"""The wire contract: request and response models shared by the API, the SDK and the miner agent."""

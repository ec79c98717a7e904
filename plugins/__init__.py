"""Built-in middleware, one concern per module. See proxy/chain.py for the contract."""

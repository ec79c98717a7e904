"""Built-in middleware, one concern per module. See proxy/core/chain.py for the contract."""

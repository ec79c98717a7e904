"""The chain's own vocabulary: the exchange types that flow through it, the one error tree, the
middleware contract and chain builder, routing from a model name to targets, the services seam,
the reasoning vocabulary and JSON helpers. Imports nothing above config/."""

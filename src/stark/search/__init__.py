"""Choosing the teacher sparsity: successive halving, the forward-pass proxy, the final choice and its bootstrap."""

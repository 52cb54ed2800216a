"""The StarK method itself, in one place (as peft keeps one folder per method).

- ``masks``: head and neuron masks hooked onto the stock transformers modules;
- ``scores``: expressiveness and friendliness of every head and FFN neuron, mixed by lam;
- ``pruning``: reorder by score, the sparsity map, slicing Linear layers (uneven widths), layer dropping;
- ``sparse_teachers``: the sparse teachers sliced in memory, and their logits cached per example.
"""

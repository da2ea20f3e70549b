"""`moeaudio bench`: measurements, one module per command.

:mod:`~moeaudio.bench.adapter` times the MoE-Adapter against the dense FFN of equal parameters and
transformers' own MoE (``bench adapter``); :mod:`~moeaudio.bench.train_step` measures one training
step of a recipe four ways (``bench train``). The results on the machines measured so far are in
docs/benchmarks.md.
"""

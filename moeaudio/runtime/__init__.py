"""The runtime layer: what every command does with a trained model, below eval/analyze/train.

* :mod:`~moeaudio.runtime.checkpoint` -- find, resolve and load checkpoints (no DeepSpeed, no pickle);
* :mod:`~moeaudio.runtime.batching` -- ``Example`` and the ``Collator``: the one prompt builder for
  training, zero-shot and few-shot generation, and length-sorted batch iteration;
* :mod:`~moeaudio.runtime.examples` -- from a recipe's data section and manifests to ``Example``\\ s
  (with cached encoder states when the encoder is frozen);
* :mod:`~moeaudio.runtime.device` -- which device a command runs on.
"""

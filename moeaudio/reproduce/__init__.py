"""`moeaudio reproduce`: run one of the paper's tables or figures (a study) and write it up.

:mod:`~moeaudio.reproduce.plan` turns a study (:mod:`moeaudio.reproduce.study`) into runs (arm x seed, each a
resolved recipe and a run folder) and into launcher commands for a cluster;
:mod:`~moeaudio.reproduce.runner` trains, evaluates and analyses each run, resuming where a killed
study stopped; :mod:`~moeaudio.reproduce.report` writes ``results.json`` and ``results.md`` with the
statistics of :mod:`moeaudio.reproduce.stats`. The options (:mod:`~moeaudio.reproduce.options`) are light, so the
CLI can register the command without loading torch.
"""

"""The engine: a Piper voice as ONNX graphs, phonemes -> ids, chunked decoding -> PCM.

Imports nothing from ``voices``, ``server`` or the CLIs: what it needs from above
(a step gate, settings) is handed in.
"""

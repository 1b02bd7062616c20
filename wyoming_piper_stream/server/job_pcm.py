"""A loaded voice speaking a job: text -> phonemes -> ids -> chunked audio -> PCM."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np

from wyoming_piper_stream.engine.clauses import utterance_pieces
from wyoming_piper_stream.engine.gate import Gate, ungated
from wyoming_piper_stream.engine.loudness import PcmStream
from wyoming_piper_stream.engine.pacing import PlaybackClock
from wyoming_piper_stream.server.jobs import SpeechJob
from wyoming_piper_stream.server.settings import SynthesisSettings
from wyoming_piper_stream.voices.builder import ReadyVoice


def pcm_for_job(
    ready: ReadyVoice,
    job: SpeechJob,
    settings: SynthesisSettings,
    speaker_id: int | None,
    stop: threading.Event,
    clock: PlaybackClock,
    gate: Gate = ungated,
) -> Iterator[bytes]:
    """Blocking: PCM bytes per decoded chunk, sentence after sentence.

    ``clock`` is the listener's playback so far (the jobs of one text stream share
    it): once audio plays, later utterances size their chunks by what is already
    buffered instead of starting small again. ``gate`` waits for the job's turn
    before each synthesis step (``scheduler``).
    """
    scales = ready.voice.scales(settings.noise_scale, settings.length_scale, settings.noise_w_scale)
    silence_seconds = settings.sentence_silence
    silence_samples = int(silence_seconds * ready.voice.config.sample_rate)
    # One limiter per job: it holds back a few ms of look-ahead until the end.
    pcm = PcmStream(ready.gain, ready.voice.config.sample_rate)
    for index, sentence in enumerate(job.sentences):
        pieces = utterance_pieces(
            ready.phonemizer, sentence, settings.max_utterance_phonemes, ready.streamer.context
        )
        for piece in pieces:
            for chunk in ready.streamer.stream_piece(piece, scales, speaker_id, clock, gate):
                if stop.is_set():
                    return
                yield pcm.feed(chunk.audio)
        is_last = index == len(job.sentences) - 1
        if silence_samples and (not is_last or job.trailing_silence):
            clock.sent(silence_seconds)
            yield pcm.feed(np.zeros(silence_samples, dtype=np.float32))
    yield pcm.end()

"""A loaded voice speaking a job: text -> phonemes -> ids -> chunked audio -> PCM."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from .loader import ReadyVoice
from .loudness import to_pcm16
from .phonemize import phonemes_to_ids, safe_phonemize
from .settings import SynthesisSettings
from .synthesis import SpeechJob


def pcm_for_job(
    ready: ReadyVoice,
    job: SpeechJob,
    settings: SynthesisSettings,
    speaker_id: int | None,
    stop: threading.Event,
) -> Iterator[bytes]:
    """Blocking: PCM bytes per decoded chunk, sentence after sentence."""
    scales = ready.voice.scales(settings.noise_scale, settings.length_scale, settings.noise_w_scale)
    id_map = ready.voice.config.phoneme_id_map
    silence = bytes(2 * int(settings.sentence_silence * ready.voice.config.sample_rate))
    for index, sentence in enumerate(job.sentences):
        for phonemes in safe_phonemize(ready.phonemizer, sentence):
            if not phonemes:
                continue
            ids = phonemes_to_ids(phonemes, id_map)
            for chunk in ready.streamer.stream(ids, scales, speaker_id):
                if stop.is_set():
                    return
                yield to_pcm16(chunk.audio, ready.gain)
        is_last = index == len(job.sentences) - 1
        if silence and (not is_last or job.trailing_silence):
            yield silence

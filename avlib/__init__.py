"""avlib: a PyTorch companion to Owens & Efros, "Audio-Visual Scene Analysis with
Self-Supervised Multisensory Features" (ECCV 2018).

Data flows one way: files -> ``avlib.io`` -> ``avlib.data`` -> ``avlib.models`` ->
``avlib.losses`` / ``avlib.metrics`` -> tasks -> ``avlib.report``.
"""

__version__ = "0.1.0"


def separate(video, checkpoint, out_dir, **options):
    """Split a video's sound into on-screen and off-screen speech (see :func:`avlib.separate.separate`)."""
    from avlib.separate import separate as _separate

    return _separate(video, checkpoint, out_dir, **options)

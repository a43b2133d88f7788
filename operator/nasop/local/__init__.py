"""`nasop run` on a laptop: the session (session.py), its progress view (progress.py), and the trial
side, stdlib only so that a trial starts fast: the wrapper around each trial process
(trialwrap.py), the fork server that starts trials from a preloaded interpreter (forkserver.py),
and the files through which a pack member and the engine talk (member_files.py).

Nothing is imported here: `python -m nasop.local.trialwrap` must not pay for Ax or torch.
"""

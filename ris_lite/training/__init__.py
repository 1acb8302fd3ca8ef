"""Training: the loss with its matching, the curriculum, the lr rule, the data sources, the
loop with its hooks, checkpoints, several GPUs under ``torchrun``; the canvas variant (ours).

Book chapters: ``book/05_loss`` (``loss``), ``book/06_training`` (``config``, ``curriculum``,
``schedule``, ``sources``, ``hooks``, ``checkpointing``, ``trainer``, ``distributed``), ``book/12_beyond``
(``canvas``, the cosine schedule), ``book/13_where_ris_stands`` (``set_loss``, ``discriminative``,
``successors``: RIS's successor families, ours).
May import: ``ris_lite.data``, ``ris_lite.model.ris``, ``ris_lite.pretrained`` and the top-level
``precision`` / ``device`` -- never evaluation or the CLI.
"""

"""Training: the loss with its matching, the curriculum, the lr rule, the data sources, the
loop with its hooks, checkpoints; the canvas variant (ours).

Book chapters: ``book/05_loss`` (``loss``), ``book/06_training`` (``config``, ``curriculum``,
``schedule``, ``sources``, ``hooks``, ``checkpointing``, ``trainer``), ``book/12_beyond``
(``canvas``, the cosine schedule).
May import: ``ris_lite.data``, ``ris_lite.model.ris``, ``ris_lite.pretrained`` and the top-level
``precision`` / ``device`` -- never evaluation or the CLI.
"""

"""Evaluation: the CVPPP metrics and region AP, running a model over a data set, the
watershed baseline, the people experiment's scores, the diagnosis of a model's segments.

Book chapters: ``book/08_evaluation`` (``metrics``, ``evaluate``, ``baseline``),
``book/10_your_data`` (``evaluate.score_predictions``), ``book/11_people`` (``people_eval``,
region AP in ``metrics``), ``book/12_beyond`` (``diagnose``: why segments are wrong).
May import: ``ris_lite.data``, ``ris_lite.model.ris`` and the top-level ``precision`` / ``device`` --
never training or the CLI.
"""

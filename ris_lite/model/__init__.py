"""The model: the FCN, the ConvLSTM, spatial inhibition and the score head, RIS itself, the
people configuration, RIS+CRF, and checkpoint files.

Book chapters: ``book/02_fcn`` (``fcn``, ``fcn8s``), ``book/03_convlstm`` (``convlstm``),
``book/04_inhibition`` (``inhibition``), ``book/07_inference`` (``ris``), ``book/09_crf``
(``crf``, ``crf_kernels``, ``crf_lattice``), ``book/11_people`` (``people``), ``book/06_training``
(``checkpoint``); RIS's successor families, ours: ``book/13_where_ris_stands`` (``set_prediction``,
``embedding``, ``kinds``).
May import: ``ris_lite.precision``, ``ris_lite.device`` -- never the data, training or evaluation.
"""

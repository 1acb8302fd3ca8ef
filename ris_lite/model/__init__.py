"""The model: the FCN, the ConvLSTM, spatial inhibition and the score head, RIS itself, the
people configuration, RIS+CRF, and checkpoint files.

Book chapters: ``book/03_fcn`` (``fcn``, ``fcn8s``), ``book/04_convlstm`` (``convlstm``),
``book/05_inhibition`` (``inhibition``), ``book/12_inference`` (``ris``), ``book/10_crf``
(``crf``, ``crf_kernels``), ``book/13_people`` (``people``), ``book/07_training`` (``checkpoint``).
May import: ``ris_lite.precision``, ``ris_lite.device`` -- never the data, training or evaluation.
"""

"""The data: procedural A1-like rosettes, real folders (CVPPP and any other), the people
stand-in and the VOC / COCO person readers, augmentation and batching.

Book chapters: ``book/01_data`` (rosettes, augmentation, batches), ``book/10_your_data``
(``folder``, ``cvppp``, ``real``), ``book/11_people`` (``people``, ``people_readers``).
May import: ``ris_lite.precision``, ``ris_lite.device`` -- never the model, training or evaluation.
"""

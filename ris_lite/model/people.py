"""The paper's people configuration of RIS (Sec. 4.2): FCN-8s on VGG16 and 1 x 1 ConvLSTM gates.

Explained in the book chapter ``book/11_people``.
"""

from __future__ import annotations

from typing import Tuple

from .ris import RISConfig

#: mean visible area of a stand-in figure as a fraction of the image (measured over 200
#: training scenes: 0.061); sets the inhibition bias b of a new people model
PEOPLE_INSTANCE_FRACTION = 0.06


def people_model_config(width: float = 1.0, input_size: Tuple[int, int] = (500, 500),
                        instance_fraction: float = PEOPLE_INSTANCE_FRACTION, batch_norm: bool = False):
    """The paper's people configuration as a :class:`~ris_lite.model.ris.RISConfig`: FCN-8s on
    VGG16 (``width`` scales it), ``d = 100`` features and hidden channels, two ConvLSTM layers
    whose gates are all 1 x 1 convolutions, spatial inhibition upsampled to the input.
    ``input_size=(500, 500)`` gives the paper's 64 x 64 x 100 state. ``batch_norm`` uses
    VGG16-BN, needed to train the FCN from scratch (the paper's FCN-8s is pretrained)."""
    return RISConfig(fcn_variant="fcn8s", fcn_width=width, fcn_batch_norm=batch_norm, channels=100,
                     lstm_layers=2, lstm_kernel=1, input_size=tuple(input_size),
                     instance_fraction=instance_fraction)

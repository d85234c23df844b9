"""realscale for Krita: upscale a layer or the whole canvas with Real-ESRGAN.

The plug-in stays thin: it reads pixels from Krita, hands them to the realscale worker (a
separate process in the core's own Python, reached through ``realscale_client``) and puts the
result back as a new layer. No torch and no tiling run inside Krita.
"""

from krita import Krita

from .extension import RealscaleExtension

Krita.instance().addExtension(RealscaleExtension(Krita.instance()))

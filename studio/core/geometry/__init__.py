"""The geometry kernels, one copy each, reused by export, rendering, fitting and the window.

- ``normals``: vertex normals (numpy, and torch for the photo fitter's differentiable shading);
- ``raster``: the z-buffer rasteriser (triangle ids, barycentrics, perspective-correct depth)
  behind thumbnails, turntables, photo renders, synthetic depth maps and visibility.
"""

from studio.core.geometry.normals import vertex_normals

__all__ = ["vertex_normals"]

"""Fine detail from a photo: a UV displacement map recovered by shape from shading, split into a
person part and an expression part driven by the blendshapes' surface compression (strain.py).

uv_raster.py (UV layout → per-texel triangle + barycentrics), displacement.py (texel frames,
detailed normals, densified displaced meshes), sfs.py (the optimiser), strain.py (compression
under an expression), normalmap.py (tangent frames, tangent-space normal maps), io.py (16-bit PNG),
gltf.py (normalTexture in a GLB)."""

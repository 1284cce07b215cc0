"""Deploy files: the Dockerfile, docker-compose.yml and deploy/ agree with the CLI, the config
and the routes.

Rules:
- Static: reads repository files only; no Docker, no cluster, no network, no kustomize binary.
- Every container of the image built from ``Dockerfile`` becomes a ``Run`` (``image.py``): its
  argv as Docker or Kubernetes assembles it from ENTRYPOINT/CMD and the overrides, its
  environment (the image's ENV overlaid with the container's, references resolved) and its
  TOML file. The checks then ask the real parser (``build_parser``) and loader
  (``load_config``).
- ``compose.py`` reads docker-compose.yml into Runs; ``kustomize.py`` checks Kubernetes
  manifests as each ``kustomization.yaml`` renders them, by a small renderer that knows what
  deploy/ uses (resources, strategic-merge patch files, configMapGenerator, images, labels). A
  kustomization using anything else fails here: extend ``render`` when deploy/ grows.
- Every failure names the file and the offending value; a test lists all its failures at once.
"""

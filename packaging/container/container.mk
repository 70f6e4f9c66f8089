# The container image (issue 18): Containerfile, compose.yaml, the image's
# entrypoint and healthcheck, and the container test that scripts/test runs as
# its own pass (tests/container/, not part of `make check`: it needs root,
# podman and debootstrap). Shipped in the tarball so that a release builds
# the image too.
EXTRA_DIST += Containerfile compose.yaml .containerignore .dockerignore \
	packaging/container/entrypoint.sh packaging/container/healthcheck.sh \
	tests/container/base-image.sh tests/container/containers.conf \
	tests/container/container.test.mjs

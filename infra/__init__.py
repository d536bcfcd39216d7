"""Infrastructure: dataset sources, tracking, registry, deployments and servers."""

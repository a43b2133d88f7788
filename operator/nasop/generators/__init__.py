"""nasop's own Ax generator components (Ax's `generators` layer): nothing here knows of trials,
state or Kubernetes, so the storage registries below the engine can name these classes."""

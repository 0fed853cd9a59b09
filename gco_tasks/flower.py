"""``python -m gco_tasks.flower``: kept at this path because k8s/, compose.yaml, the Procfile and the
README start Flower with it; the login guard is ``gco_tasks.worker.flower``."""

from gco_tasks.worker.flower import main

if __name__ == "__main__":
    main()

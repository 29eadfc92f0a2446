"""A Python client of ``mantis serve`` in the astroquery style: ``Service(url).predict(table)``."""

from mantis.client._service import Service as Service
from mantis.client._service import ServiceError as ServiceError

__all__ = ["Service", "ServiceError"]

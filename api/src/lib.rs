//! Control plane: sluiced, sluiceadm and the HTTP API. Not built yet: see issue 4.

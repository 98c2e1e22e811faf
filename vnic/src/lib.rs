//! The VPC policy of one vNIC (gateway, firewall, router, nat). Not built yet: see issue 3.

//! Guest and uplink backends, workers and the switch. Not built yet: see issue 5.

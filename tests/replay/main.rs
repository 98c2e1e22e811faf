//! pcap replay (being written).

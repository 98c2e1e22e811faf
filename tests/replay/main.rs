//! The pcap replay tier: the committed captures under `pcaps/` replayed
//! through vm1's port (`harness`), every output frame checked with
//! etherparse (`view`) and, when tshark is installed, dissected by
//! tshark (`tshark`); one test per scenario (`behaviours`). `gen` makes
//! the captures and checks the committed ones have not drifted from it.

mod behaviours;
mod gen;
mod harness;
mod mcast;
mod outer;
mod pcapio;
mod tshark;
mod view;
mod world;

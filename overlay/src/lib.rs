//! Geneve overlay, V2P/V2B tables and the overlay layer. Not built yet: see issue 3.

/* sluice's C shim over DPDK: exported (non-inline) wrappers for what DPDK
 * only offers as `static inline` in its headers (the RX/TX bursts, mbuf
 * allocation and accessors, rte_errno), which Rust cannot call directly.
 * Compiled by build.rs against the same headers as the bindings, so mbuf
 * and queue layouts always agree with the installed DPDK. */
#ifndef SLUICE_DPDK_SHIM_H
#define SLUICE_DPDK_SHIM_H

#include <stdint.h>

struct rte_mbuf;
struct rte_mempool;

/* rte_eth_rx_burst / rte_eth_tx_burst. */
uint16_t sluice_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
                             struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t sluice_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
                             struct rte_mbuf **tx_pkts, uint16_t nb_pkts);

/* Allocation: rte_pktmbuf_alloc, rte_pktmbuf_alloc_bulk (all or nothing:
 * 0 on success, a negative errno when the pool cannot supply `count`). */
struct rte_mbuf *sluice_pktmbuf_alloc(struct rte_mempool *mp);
int sluice_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs,
                              unsigned int count);
/* rte_pktmbuf_free (a whole chain) and rte_pktmbuf_free_bulk (NULL entries
 * are skipped). */
void sluice_pktmbuf_free(struct rte_mbuf *m);
void sluice_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int count);

/* Accessors of one segment (data_len, mtod, next) and of the packet
 * (pkt_len, nb_segs, which only the first segment carries). */
void *sluice_pktmbuf_mtod(struct rte_mbuf *m);
uint16_t sluice_pktmbuf_data_len(const struct rte_mbuf *m);
void sluice_pktmbuf_set_data_len(struct rte_mbuf *m, uint16_t len);
uint32_t sluice_pktmbuf_pkt_len(const struct rte_mbuf *m);
void sluice_pktmbuf_set_pkt_len(struct rte_mbuf *m, uint32_t len);
uint16_t sluice_pktmbuf_nb_segs(const struct rte_mbuf *m);
struct rte_mbuf *sluice_pktmbuf_next(struct rte_mbuf *m);
uint16_t sluice_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t sluice_pktmbuf_tailroom(const struct rte_mbuf *m);

/* rte_pktmbuf_append / prepend / adj (NULL when there is no room) and
 * rte_pktmbuf_trim (0, or -1 when the last segment is too short). */
char *sluice_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
char *sluice_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *sluice_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
int sluice_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);

/* Copies the packet `m` (every segment of its chain) to `dst`, which holds
 * `cap` bytes. Returns the packet length, or UINT32_MAX (copying nothing)
 * when it does not fit. */
uint32_t sluice_pktmbuf_copy_out(const struct rte_mbuf *m, void *dst,
                                 uint32_t cap);
/* Fills the empty mbuf `m` with the `len` bytes at `src`, chaining more
 * segments from `mp` when one is too small. Returns 0, or -1 when `mp` ran
 * out (the segments already chained stay on `m`: free it with
 * sluice_pktmbuf_free). */
int sluice_pktmbuf_copy_in(struct rte_mempool *mp, struct rte_mbuf *m,
                           const void *src, uint32_t len);

/* Zero copy: what the engine needs to work on a received frame inside its
 * mbuf, for a whole burst in one call. `buf` and `buf_len` are the mbuf's
 * whole data buffer (headroom included), the frame is `pkt_len` bytes at
 * `data_off`; `lendable` is set when the frame is all in that one segment
 * (a chain is copied instead). `outer_l4_good` is
 * sluice_pktmbuf_outer_l4_csum_good(). */
struct sluice_rx_frame {
	void *buf;
	uint32_t pkt_len;
	uint16_t buf_len;
	uint16_t data_off;
	uint8_t lendable;
	uint8_t outer_l4_good;
};
void sluice_pktmbuf_describe(struct rte_mbuf *const *mbufs, unsigned int count,
                             struct sluice_rx_frame *out);
/* Makes the single-segment mbuf `m` hold the `len` bytes at `data_off` of
 * its buffer, as a fresh frame to transmit: lengths set, offload flags and
 * packet type cleared. Returns 0, or -1 (nothing changed) when that does
 * not fit its buffer or `m` is a chain. */
int sluice_pktmbuf_set_frame(struct rte_mbuf *m, uint16_t data_off, uint16_t len);

/* rte_errno (a per-lcore variable behind a macro) and rte_lcore_id(). */
int sluice_rte_errno(void);
unsigned int sluice_lcore_id(void);

/* Offload and RSS flags are RTE_BIT64() macros that bindgen cannot
 * evaluate; these return them. */
uint64_t sluice_eth_tx_offload_multi_segs(void);
uint64_t sluice_eth_rx_offload_scatter(void);
/* RX checksum offloads for UDP (inner and outer), and whether a received
 * mbuf's outermost UDP checksum was verified good by the device. */
uint64_t sluice_eth_rx_offload_udp_cksum(void);
int sluice_pktmbuf_outer_l4_csum_good(const struct rte_mbuf *m);
uint64_t sluice_eth_rss_ip_tcp_udp(void);

#endif

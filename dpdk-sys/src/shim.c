/* See shim.h. Each function is the DPDK inline of the same name, made
 * callable from Rust; nothing here adds behaviour except the two copy
 * helpers, which walk mbuf chains so Rust never touches mbuf fields. */
#include <rte_config.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_memcpy.h>

#include "shim.h"

uint16_t sluice_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
                             struct rte_mbuf **rx_pkts, uint16_t nb_pkts)
{
	return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts);
}

uint16_t sluice_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
                             struct rte_mbuf **tx_pkts, uint16_t nb_pkts)
{
	return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts);
}

struct rte_mbuf *sluice_pktmbuf_alloc(struct rte_mempool *mp)
{
	return rte_pktmbuf_alloc(mp);
}

int sluice_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs,
                              unsigned int count)
{
	return rte_pktmbuf_alloc_bulk(mp, mbufs, count);
}

void sluice_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

void sluice_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int count)
{
	rte_pktmbuf_free_bulk(mbufs, count);
}

void *sluice_pktmbuf_mtod(struct rte_mbuf *m)
{
	return rte_pktmbuf_mtod(m, void *);
}

uint16_t sluice_pktmbuf_data_len(const struct rte_mbuf *m)
{
	return rte_pktmbuf_data_len(m);
}

void sluice_pktmbuf_set_data_len(struct rte_mbuf *m, uint16_t len)
{
	m->data_len = len;
}

uint32_t sluice_pktmbuf_pkt_len(const struct rte_mbuf *m)
{
	return rte_pktmbuf_pkt_len(m);
}

void sluice_pktmbuf_set_pkt_len(struct rte_mbuf *m, uint32_t len)
{
	m->pkt_len = len;
}

uint16_t sluice_pktmbuf_nb_segs(const struct rte_mbuf *m)
{
	return m->nb_segs;
}

struct rte_mbuf *sluice_pktmbuf_next(struct rte_mbuf *m)
{
	return m->next;
}

uint16_t sluice_pktmbuf_headroom(const struct rte_mbuf *m)
{
	return rte_pktmbuf_headroom(m);
}

uint16_t sluice_pktmbuf_tailroom(const struct rte_mbuf *m)
{
	return rte_pktmbuf_tailroom(m);
}

char *sluice_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_append(m, len);
}

char *sluice_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_prepend(m, len);
}

char *sluice_pktmbuf_adj(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_adj(m, len);
}

int sluice_pktmbuf_trim(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_trim(m, len);
}

uint32_t sluice_pktmbuf_copy_out(const struct rte_mbuf *m, void *dst,
                                 uint32_t cap)
{
	uint32_t len = rte_pktmbuf_pkt_len(m);
	uint32_t off = 0;
	const struct rte_mbuf *seg;

	if (len > cap)
		return UINT32_MAX;
	/* A chain whose segments add up to more than pkt_len (a driver bug)
	 * must not overrun `dst`: stop at pkt_len. */
	for (seg = m; seg != NULL && off < len; seg = seg->next) {
		uint32_t n = RTE_MIN((uint32_t)seg->data_len, len - off);
		rte_memcpy((uint8_t *)dst + off, rte_pktmbuf_mtod(seg, const void *), n);
		off += n;
	}
	return off;
}

int sluice_pktmbuf_copy_in(struct rte_mempool *mp, struct rte_mbuf *m,
                           const void *src, uint32_t len)
{
	struct rte_mbuf *last = m;
	uint32_t off = 0;

	for (;;) {
		uint32_t n = RTE_MIN((uint32_t)rte_pktmbuf_tailroom(last), len - off);
		rte_memcpy(rte_pktmbuf_mtod_offset(last, uint8_t *, last->data_len),
		           (const uint8_t *)src + off, n);
		last->data_len += n;
		m->pkt_len += n;
		off += n;
		if (off == len)
			return 0;
		struct rte_mbuf *seg = rte_pktmbuf_alloc(mp);
		if (seg == NULL)
			return -1;
		/* Chained segments carry no headroom: only the first one may
		 * have headers pushed in front of it. */
		seg->data_off = 0;
		last->next = seg;
		m->nb_segs++;
		last = seg;
	}
}

int sluice_rte_errno(void)
{
	return rte_errno;
}

unsigned int sluice_lcore_id(void)
{
	return rte_lcore_id();
}

uint64_t sluice_eth_tx_offload_multi_segs(void)
{
	return RTE_ETH_TX_OFFLOAD_MULTI_SEGS;
}

uint64_t sluice_eth_rx_offload_scatter(void)
{
	return RTE_ETH_RX_OFFLOAD_SCATTER;
}

uint64_t sluice_eth_rx_offload_udp_cksum(void)
{
	return RTE_ETH_RX_OFFLOAD_UDP_CKSUM | RTE_ETH_RX_OFFLOAD_OUTER_UDP_CKSUM;
}

int sluice_pktmbuf_outer_l4_csum_good(const struct rte_mbuf *m)
{
	/* A device that parsed the tunnel reports the outer UDP checksum
	 * apart from the inner L4 one. */
	if ((m->ol_flags & RTE_MBUF_F_RX_OUTER_L4_CKSUM_MASK) ==
	    RTE_MBUF_F_RX_OUTER_L4_CKSUM_GOOD)
		return 1;
	/* One that did not: its L4 verdict is the outer UDP's, when it says
	 * it saw no tunnel and a UDP header (an unknown type vouches for
	 * nothing). */
	return (m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK) == RTE_MBUF_F_RX_L4_CKSUM_GOOD &&
	       (m->packet_type & RTE_PTYPE_TUNNEL_MASK) == 0 &&
	       (m->packet_type & RTE_PTYPE_L4_MASK) == RTE_PTYPE_L4_UDP;
}

uint64_t sluice_eth_rss_ip_tcp_udp(void)
{
	return RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP;
}

void sluice_pktmbuf_describe(struct rte_mbuf *const *mbufs, unsigned int count,
                             struct sluice_rx_frame *out)
{
	unsigned int i;

	for (i = 0; i < count; i++) {
		const struct rte_mbuf *m = mbufs[i];
		struct sluice_rx_frame *f = &out[i];

		f->buf = m->buf_addr;
		f->buf_len = m->buf_len;
		f->data_off = m->data_off;
		f->pkt_len = rte_pktmbuf_pkt_len(m);
		/* One segment, its own buffer (not an indirect or external one
		 * another mbuf may share) referenced once, the frame inside it:
		 * what else a driver hands over takes the copy path. */
		f->lendable = RTE_MBUF_DIRECT(m) && rte_mbuf_refcnt_read(m) == 1 &&
			      m->nb_segs == 1 && m->next == NULL &&
			      (uint32_t)m->data_off + m->data_len <= m->buf_len &&
			      m->data_len == f->pkt_len;
		f->outer_l4_good = (uint8_t)sluice_pktmbuf_outer_l4_csum_good(m);
	}
}

int sluice_pktmbuf_set_frame(struct rte_mbuf *m, uint16_t data_off, uint16_t len)
{
	if (!RTE_MBUF_DIRECT(m) || rte_mbuf_refcnt_read(m) != 1 || m->nb_segs != 1 ||
	    m->next != NULL || (uint32_t)data_off + len > m->buf_len)
		return -1;
	m->data_off = data_off;
	m->data_len = len;
	m->pkt_len = len;
	m->ol_flags = 0;
	m->packet_type = 0;
	return 0;
}

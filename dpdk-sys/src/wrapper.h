/* What bindgen reads: the DPDK API sluice uses, plus the shim's wrappers
 * for the functions DPDK only offers as `static inline`. */
#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

#include "shim.h"

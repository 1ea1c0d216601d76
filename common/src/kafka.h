/* Private to common/: what the producer and the consumer share. */
#ifndef SB_KAFKA_PRIVATE_H
#define SB_KAFKA_PRIVATE_H
#include <librdkafka/rdkafka.h>

#include "sb/buf.h"

/* A configuration with bootstrap.servers = brokers and librdkafka's log
 * routed to sb_log. NULL with err on a bad value; the caller hands it to
 * rd_kafka_new or frees it with rd_kafka_conf_destroy. (producer.c) */
rd_kafka_conf_t *sb_kafka_conf(const char *brokers, sb_buf_t *err);

#endif

/* JSON <-> protobuf transcoder (common/src/json.c, sb/json.h). */
#include <criterion/criterion.h>
#include <string.h>

#include "kitchen.pb-c.h"
#include "sb/json.h"

static sb_arena_t *a;
static sb_buf_t err, out;

static void setup(void)
{
    a = sb_arena_new();
    sb_buf_init(&err);
    sb_buf_init(&out);
}

static void teardown(void)
{
    sb_buf_release(&err);
    sb_buf_release(&out);
    sb_arena_free(a);
}

TestSuite(transcode, .init = setup, .fini = teardown);

static Sb__Test__Kitchen *parse_ok(const char *json)
{
    ProtobufCMessage *m;
    sb_status_t st = sb_json_decode(&sb__test__kitchen__descriptor, json, strlen(json), a, &m, &err);
    cr_assert_eq(st, SB_OK, "%s: %s", json, err.buf);
    return (Sb__Test__Kitchen *)m;
}

static void parse_bad(const char *json, const char *needle)
{
    ProtobufCMessage *m;
    sb_buf_reset(&err);
    sb_status_t st = sb_json_decode(&sb__test__kitchen__descriptor, json, strlen(json), a, &m, &err);
    cr_assert_eq(st, SB_INVALID_ARGUMENT, "%s should be rejected", json);
    cr_assert(strstr(err.buf, needle) != NULL, "error for %s was: %s (wanted %s)", json, err.buf,
              needle);
}

Test(transcode, camel_case_names)
{
    char n[64];
    sb_json_name("seat_ids", n, sizeof n);
    cr_assert_str_eq(n, "seatIds");
    sb_json_name("next_page_token", n, sizeof n);
    cr_assert_str_eq(n, "nextPageToken");
    sb_json_name("id", n, sizeof n);
    cr_assert_str_eq(n, "id");
}

Test(transcode, parses_every_shape)
{
    Sb__Test__Kitchen *k = parse_ok("{\"title\":\"Cats\",\"runningMinutes\":150,\"amount\":\"120000\","
                                    "\"big\":\"18446744073709551615\","
                                    "\"active\":true,\"ratio\":0.5,\"blob\":\"aGk=\",\"grade\":\"VIP\","
                                    "\"seatIds\":[\"A-1\",\"A-2\"],"
                                    "\"seats\":[{\"seatId\":\"B-1\",\"grade\":\"R\",\"price\":90000}],"
                                    "\"mainSeat\":{\"seat_id\":\"C-3\"},"
                                    "\"limit\":0,\"amounts\":[1,\"2\"],\"quantity\":3}");
    cr_assert_str_eq(k->title, "Cats");
    cr_assert_eq(k->running_minutes, 150);
    cr_assert_eq(k->amount, 120000);
    cr_assert_eq(k->big, UINT64_MAX);
    cr_assert(k->active);
    cr_assert_float_eq(k->ratio, 0.5, 1e-9);
    cr_assert_eq(k->blob.len, 2);
    cr_assert_eq(memcmp(k->blob.data, "hi", 2), 0);
    cr_assert_eq(k->grade, SB__TEST__GRADE__VIP);
    cr_assert_eq(k->n_seat_ids, 2);
    cr_assert_str_eq(k->seat_ids[1], "A-2");
    cr_assert_eq(k->n_seats, 1);
    cr_assert_eq(k->seats[0]->price, 90000);
    cr_assert_eq(k->seats[0]->grade, SB__TEST__GRADE__R);
    cr_assert_str_eq(k->main_seat->seat_id, "C-3");
    cr_assert_eq(k->n_amounts, 2);
    cr_assert_eq(k->amounts[1], 2);
    cr_assert_eq(k->target_case, SB__TEST__KITCHEN__TARGET_QUANTITY);
    cr_assert_eq(k->quantity, 3);
}

Test(transcode, empty_body_and_nulls_are_defaults)
{
    Sb__Test__Kitchen *k = parse_ok("");
    cr_assert_str_eq(k->title, "");
    k = parse_ok("{\"title\":null,\"seatIds\":null}");
    cr_assert_str_eq(k->title, "");
    cr_assert_eq(k->n_seat_ids, 0);
}

Test(transcode, rejects_bad_input_naming_the_field)
{
    parse_bad("{\"nope\":1}", "field nope: unknown field");
    parse_bad("{\"title\":5}", "field title: must be a string");
    parse_bad("{\"runningMinutes\":\"abc\"}", "field runningMinutes");
    parse_bad("{\"runningMinutes\":3000000000}", "32-bit");
    parse_bad("{\"runningMinutes\":1.5}", "runningMinutes");
    parse_bad("{\"amount\":\"12x\"}", "field amount");
    parse_bad("{\"big\":-1}", "field big");
    parse_bad("{\"grade\":\"GOLD\"}", "must be one of VIP, R");
    parse_bad("{\"seatIds\":\"A-1\"}", "must be an array");
    parse_bad("{\"seatIds\":[1]}", "seatIds[0]: must be a string");
    parse_bad("{\"seats\":[{\"price\":\"x\"}]}", "seats[0].price");
    parse_bad("{\"mainSeat\":[]}", "mainSeat: must be an object");
    parse_bad("{\"active\":\"yes\"}", "true or false");
    parse_bad("{\"blob\":\"!!\"}", "base64");
    parse_bad("[1,2]", "JSON object");
    parse_bad("{\"title\":\"a\",\"title\":\"b\"}", "invalid JSON");
    parse_bad("{\"title\":", "invalid JSON");
    parse_bad("{\"title\":\"a\\u0000b\"}", "NUL");
}

Test(transcode, ignore_unknown_skips_what_the_message_does_not_declare)
{
    /* A reply from outside the platform: extra fields (nested too) and an enum
     * value added later are skipped; wrong types are still refused. */
    const char *json = "{\"title\":\"Cats\",\"object\":\"charge\",\"meta\":{\"a\":[1]},"
                       "\"grade\":\"PLATINUM\",\"mainSeat\":{\"seatId\":\"C-3\",\"row\":3}}";
    ProtobufCMessage *m;
    cr_assert_eq(sb_json_decode_flags(&sb__test__kitchen__descriptor, json, strlen(json),
                                      SB_JSON_IGNORE_UNKNOWN, a, &m, &err),
                 SB_OK, "%s", err.buf);
    Sb__Test__Kitchen *k = (Sb__Test__Kitchen *)m;
    cr_assert_str_eq(k->title, "Cats");
    cr_assert_eq(k->grade, SB__TEST__GRADE__GRADE_UNSPECIFIED);
    cr_assert_str_eq(k->main_seat->seat_id, "C-3");
    parse_bad(json, "unknown field"); /* strict by default */
    const char *wrong = "{\"title\":5,\"extra\":1}";
    sb_buf_reset(&err);
    cr_assert_eq(sb_json_decode_flags(&sb__test__kitchen__descriptor, wrong, strlen(wrong),
                                      SB_JSON_IGNORE_UNKNOWN, a, &m, &err),
                 SB_INVALID_ARGUMENT);
    cr_assert(strstr(err.buf, "field title: must be a string"), "%s", err.buf);
}

Test(transcode, rejects_deep_nesting)
{
    /* mainSeat is a Seat, which has no message fields: depth is bounded by the
     * schema here, so build an over-deep JSON the parser must refuse first. */
    char deep[4096] = "";
    for (int i = 0; i < 1000; i++)
        strcat(deep, "[");
    ProtobufCMessage *m;
    cr_assert_eq(sb_json_decode(&sb__test__kitchen__descriptor, deep, strlen(deep), a, &m, &err),
                 SB_INVALID_ARGUMENT);
}

Test(transcode, prints_proto3_json)
{
    Sb__Test__Kitchen *k =
        parse_ok("{\"title\":\"Cats \\\"2\\\"\",\"amount\":-5,\"grade\":\"R\",\"blob\":\"aGk=\","
                 "\"seats\":[{\"seatId\":\"B-1\",\"price\":\"7\"}],\"scheduleId\":\"s1\"}");
    sb_json_encode(&k->base, &out);
    cr_assert_str_eq(
        out.buf, "{\"title\":\"Cats \\\"2\\\"\",\"runningMinutes\":0,\"amount\":\"-5\",\"big\":\"0\","
                 "\"active\":false,\"ratio\":0,\"blob\":\"aGk=\",\"grade\":\"R\",\"seatIds\":[],"
                 "\"seats\":[{\"seatId\":\"B-1\",\"grade\":\"GRADE_UNSPECIFIED\",\"price\":\"7\"}],"
                 "\"limit\":0,\"amounts\":[],\"scheduleId\":\"s1\"}");
}

Test(transcode, round_trip_through_json_is_identity)
{
    Sb__Test__Kitchen *k = parse_ok(
        "{\"title\":\"t\",\"runningMinutes\":-7,\"amount\":\"9007199254740993\",\"big\":\"5\","
        "\"active\":true,"
        "\"ratio\":0.25,\"blob\":\"AAEC/"
        "w==\",\"grade\":\"VIP\",\"seatIds\":[\"x\"],\"seats\":[{\"seatId\":\"s\"}],"
        "\"mainSeat\":{\"price\":\"1\"},\"limit\":4,\"amounts\":[\"-1\"],\"scheduleId\":\"z\"}");
    sb_json_encode(&k->base, &out);
    ProtobufCMessage *m2;
    cr_assert_eq(sb_json_decode(&sb__test__kitchen__descriptor, out.buf, out.len, a, &m2, &err), SB_OK,
                 "%s", err.buf);
    /* compare the wire encodings */
    size_t n1 = protobuf_c_message_get_packed_size(&k->base),
           n2 = protobuf_c_message_get_packed_size(m2);
    cr_assert_eq(n1, n2);
    uint8_t *b1 = sb_arena_alloc(a, n1), *b2 = sb_arena_alloc(a, n2);
    protobuf_c_message_pack(&k->base, b1);
    protobuf_c_message_pack(m2, b2);
    cr_assert_eq(memcmp(b1, b2, n1), 0);
}

Test(transcode, text_values_fill_fields)
{
    Sb__Test__Kitchen *k = parse_ok("{}");
    cr_assert_eq(sb_json_set_field(&k->base, "scheduleId", "s-9", a, &err), SB_OK);
    cr_assert_eq(sb_json_set_field(&k->base, "limit", "20", a, &err), SB_OK);
    cr_assert_eq(sb_json_set_field(&k->base, "grade", "VIP", a, &err), SB_OK);
    cr_assert_eq(sb_json_set_field(&k->base, "active", "true", a, &err), SB_OK);
    cr_assert_str_eq(k->schedule_id, "s-9");
    cr_assert_eq(k->limit, 20);
    cr_assert_eq(k->grade, SB__TEST__GRADE__VIP);
    cr_assert(k->active);
    cr_assert_eq(sb_json_set_field(&k->base, "limit", "lots", a, &err), SB_INVALID_ARGUMENT);
    cr_assert_eq(sb_json_set_field(&k->base, "nothere", "1", a, &err), SB_NOT_FOUND);
}

/* test_cli_parse.c - the value parsers of the command line: suffixes are powers of two,
 * zero/negative/overflow/bad suffix/empty items are refused with a message naming what is
 * accepted, grids and choice lists parse as documented. */
#include <string.h>

#include "cli.h"
#include "test_util.h"

static void ok_count(const char *text, uint64_t max, uint64_t want)
{
    uint64_t v = 0;
    char err[300] = "";
    int rc = cli_parse_count(text, max, &v, err, sizeof err);
    CHECK(rc == 0 && v == want, "'%s' -> rc %d value %llu (want %llu) %s", text, rc,
          (unsigned long long)v, (unsigned long long)want, err);
}

static void bad_count(const char *text, uint64_t max, const char *must_say)
{
    uint64_t v = 12345;
    char err[300] = "";
    int rc = cli_parse_count(text, max, &v, err, sizeof err);
    CHECK(rc == -1 && v == 12345, "'%s' accepted", text);
    CHECK(strstr(err, must_say) != NULL, "'%s': message '%s' lacks '%s'", text, err, must_say);
    CHECK(strchr(err, '\n') == NULL, "'%s': message has a newline", text);
}

int main(void)
{
    ok_count("1", 100, 1);
    ok_count("4096", 1u << 20, 4096);
    ok_count("4k", 1u << 20, 4096);
    ok_count("4K", 1u << 20, 4096);
    ok_count("1M", 1u << 30, 1u << 20);
    ok_count("3G", 1ull << 40, 3ull << 30);
    ok_count("128k", 1ull << 40, 131072);
    ok_count("18446744073709551615", UINT64_MAX, UINT64_MAX);
    bad_count("", 100, "empty");
    bad_count("0", 100, "zero");
    bad_count("0k", 100, "zero");
    bad_count("-4", 100, "negative");
    bad_count("abc", 100, "not a number");
    bad_count("+4", 100, "not a number");
    bad_count(" 4", 100, "not a number");
    bad_count("4x", 100, "bad suffix 'x'");
    bad_count("4kk", 1u << 20, "bad suffix 'k'");
    bad_count("4m", 1u << 30, "bad suffix 'm'");
    bad_count("1.5k", 1u << 20, "not an integer");
    bad_count("18446744073709551616", UINT64_MAX, "too large");
    bad_count("99999999999999999999999", UINT64_MAX, "too large");
    bad_count("16G", 1ull << 30, "too large");
    bad_count("17179869184G", UINT64_MAX, "too large"); /* 2^34 G = 2^64 overflows the shift */
    bad_count("101", 100, "at most 100");
    bad_count("1,2", 100, "not an integer");

    char err[300];
    uint64_t v;
    CHECK(cli_parse_uint("0", 10, &v, err, sizeof err) == 0 && v == 0, "uint accepts 0");

    cli_u64_list l;
    CHECK(cli_parse_count_list("1k,2k,4096", 1u << 20, &l, err, sizeof err) == 0 && l.n == 3 &&
              l.v[0] == 1024 && l.v[1] == 2048 && l.v[2] == 4096,
          "list");
    CHECK(cli_parse_count_list("1,,2", 100, &l, err, sizeof err) == -1 && strstr(err, "empty item"),
          "empty item: %s", err);
    CHECK(cli_parse_count_list("1,2,", 100, &l, err, sizeof err) == -1, "trailing comma");
    CHECK(cli_parse_count_list(",1", 100, &l, err, sizeof err) == -1, "leading comma");
    CHECK(cli_parse_count_list("1,x", 100, &l, err, sizeof err) == -1 && strstr(err, "'x'"),
          "bad item named: %s", err);

    unsigned mask = 0;
    CHECK(cli_parse_choice_set("ring,a2d-o", am_algo_names(), &mask, err, sizeof err) == 0 &&
              mask == ((1u << 0) | (1u << 2)),
          "algo set");
    CHECK(cli_parse_choice_set("ring,tree", am_algo_names(), &mask, err, sizeof err) == -1 &&
              strstr(err, "'tree'") && strstr(err, "a2d-no"),
          "unknown algo lists the accepted ones: %s", err);
    int c = -1;
    CHECK(cli_parse_choice("bf16", cli_dtype_names, &c, err, sizeof err) == 0 && c == 2, "bf16");
    CHECK(cli_parse_choice("fp8", cli_dtype_names, &c, err, sizeof err) == -1 &&
              strstr(err, "f32, f16, bf16"),
          "fp8: %s", err);

    cli_grid g;
    CHECK(cli_parse_grid("4x8", &g, err, sizeof err) == 0 && g.rows == 4 && g.cols == 8 &&
              !g.is_auto,
          "4x8");
    CHECK(cli_parse_grid("auto", &g, err, sizeof err) == 0 && g.is_auto, "auto");
    const char *bad_grids[] = {"4", "4x", "x4", "0x4", "4x0", "4x4x4", "-1x4", "axb", "4X4", ""};
    for (size_t i = 0; i < sizeof bad_grids / sizeof bad_grids[0]; i++)
        CHECK(cli_parse_grid(bad_grids[i], &g, err, sizeof err) == -1 && strstr(err, "RxC"),
              "grid '%s' accepted or message '%s'", bad_grids[i], err);
    return test_finish("test_cli_parse");
}

/* test_log.c - structured log lines: fields, escaping, levels, both formats. */
#include "log.h"
#include "suites.h"

#include <stdlib.h>
#include <unistd.h>

/* Runs `emit` with stderr sent to a pipe and returns what it wrote (caller frees). */
static char *capture(void (*emit)(void))
{
    int fds[2];
    CU_ASSERT_EQUAL_FATAL(pipe(fds), 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fds[1], STDERR_FILENO);
    emit();
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fds[1]);
    char *out = calloc(1, 4096);
    ssize_t n = read(fds[0], out, 4095);
    close(fds[0]);
    out[n > 0 ? n : 0] = '\0';
    return out;
}

static void emit_text(void)
{
    ns_log_setup(NS_LOG_INFO, NS_LOG_TEXT, "test");
    ns_log(NS_LOG_DEBUG, "hidden", "k", "v", NULL);
    ns_log(NS_LOG_WARN, "pod refused", "pod", "shop/cart-1", "reason", "bad \"port\" = x", NULL);
}

static void emit_json(void)
{
    ns_log_setup(NS_LOG_DEBUG, NS_LOG_JSON, "test");
    ns_log(NS_LOG_DEBUG, "line\nbreak", "k", "tab\there", "empty", NULL, NULL);
}

static void test_text(void)
{
    char *out = capture(emit_text);
    /* "<timestamp> warn  test: pod refused pod=shop/cart-1 reason="bad \"port\" = x"\n" */
    const char *rest = strchr(out, ' ');
    CU_ASSERT_PTR_NOT_NULL_FATAL(rest);
    NS_ASSERT_STR_EQ(rest,
                     " warn  test: pod refused pod=shop/cart-1 reason=\"bad \\\"port\\\" = x\"\n");
    CU_ASSERT_PTR_NULL(strstr(out, "hidden"));
    free(out);
}

static void test_json(void)
{
    char *out = capture(emit_json);
    const char *rest = strstr(out, "\"level\"");
    CU_ASSERT_PTR_NOT_NULL_FATAL(rest);
    NS_ASSERT_STR_EQ(rest, "\"level\":\"debug\",\"component\":\"test\",\"msg\":\"line\\nbreak\","
                           "\"k\":\"tab\\there\",\"empty\":\"\"}\n");
    CU_ASSERT_EQUAL(strncmp(out, "{\"ts\":\"20", 9), 0);
    free(out);
    ns_log_setup(NS_LOG_INFO, NS_LOG_TEXT, "nutshell");
}

static void test_parse(void)
{
    ns_log_level l;
    ns_log_format f;
    NS_ASSERT_INT_EQ(ns_log_level_parse("WARNING", &l), 0);
    NS_ASSERT_INT_EQ(l, NS_LOG_WARN);
    NS_ASSERT_INT_EQ(ns_log_level_parse("loud", &l), -EINVAL);
    NS_ASSERT_INT_EQ(ns_log_format_parse("json", &f), 0);
    NS_ASSERT_INT_EQ(ns_log_format_parse("xml", &f), -EINVAL);
}

const ns_test log_tests[] = {
    {"text lines", test_text},
    {"json lines", test_json},
    {"level and format names", test_parse},
    {NULL, NULL},
};

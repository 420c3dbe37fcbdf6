/* test_arena.c - the request-scoped cJSON allocator. */
#include "arena.h"
#include "suites.h"

#include <cjson/cJSON.h>
#include <stdlib.h>

static void test_window_allocations(void)
{
    ns_arena_install();

    /* Outside a window: ordinary heap memory that outlives everything. */
    cJSON *keep = cJSON_Parse("{\"a\":[1,2,3]}");
    CU_ASSERT_PTR_NOT_NULL_FATAL(keep);

    ns_arena_begin();
    /* Inside: many nodes, a large string beyond one block, frees of both kinds. */
    cJSON *big = cJSON_CreateArray();
    for (int i = 0; i < 5000; i++)
        cJSON_AddItemToArray(big, cJSON_CreateNumber(i));
    char *huge = malloc(200000);
    memset(huge, 'x', 199999);
    huge[199999] = '\0';
    cJSON *s = cJSON_CreateString(huge);
    free(huge);
    CU_ASSERT_PTR_NOT_NULL(s);
    NS_ASSERT_INT_EQ(strlen(s->valuestring), 199999);
    NS_ASSERT_INT_EQ(cJSON_GetArraySize(big), 5000);
    char *printed = cJSON_PrintUnformatted(big);
    CU_ASSERT_PTR_NOT_NULL(printed);
    CU_ASSERT_EQUAL(strncmp(printed, "[0,1,2,", 7), 0);
    cJSON_free(printed);
    cJSON_Delete(big);
    cJSON_Delete(s);
    /* a heap object made before the window may be freed inside it */
    cJSON_Delete(cJSON_DetachItemFromObject(keep, "a"));
    ns_arena_end();

    /* After the window the heap object is intact and usable. */
    CU_ASSERT_PTR_NULL(cJSON_GetObjectItem(keep, "a"));
    cJSON_AddNumberToObject(keep, "b", 2);
    char *out = cJSON_PrintUnformatted(keep);
    NS_ASSERT_STR_EQ(out, "{\"b\":2}");
    cJSON_free(out);
    cJSON_Delete(keep);

    /* Restore plain malloc/free for the other suites. */
    cJSON_InitHooks(NULL);
}

const ns_test arena_tests[] = {
    {"window allocations", test_window_allocations},
    {NULL, NULL},
};

# proxycore: the proxy's pure parts (HTTP/1.1 parsing and head edits, route tables and
# weighted selection, retry budget and outlier ejection, trace context, the route
# discovery protocol, flags). No sockets, no clock: unit-tested in tests/unit/proxy and
# fuzzed in tests/fuzz (fuzz_http1, fuzz_routes, fuzz_discovery).
add_library(proxycore STATIC http1.c h1edit.c routes.c budget.c trace.c discovery.c config.c)
target_include_directories(proxycore PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(proxycore PUBLIC nutshell)

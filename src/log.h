/* Leveled logging to stderr, owned by src/log.c. Library code reports through vka_log;
 * an error message is also kept per thread, so that a caller (the CLI, a test) can read
 * what went wrong after a function returned its negative errno. */
#ifndef VKA_LOG_H
#define VKA_LOG_H

#include <stdbool.h>

enum vka_log_level {
    VKA_LOG_ERROR,
    VKA_LOG_WARN,
    VKA_LOG_INFO,
    VKA_LOG_DEBUG,
};

#if defined(__GNUC__)
#define VKA_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define VKA_PRINTF(a, b)
#endif

void vka_log(enum vka_log_level level, const char *fmt, ...) VKA_PRINTF(2, 3);
void vka_log_set_level(enum vka_log_level level);
/* With keep on, errors are only kept for vka_last_error(), not printed: a caller that
 * prints every error it gets (the CLI) prints each one once. Warnings still print. */
void vka_log_keep_errors(bool keep);
enum vka_log_level vka_log_get_level(void);
/* A tag printed after "vkaccum:" on every message (NULL: none); the string must outlive
 * the logging (dist.c tags each rank of a run of several processes). */
void vka_log_set_tag(const char *tag);

/* Monotonic seconds: the one clock of the library and the CLI (timings, img/s, ETA). */
double vka_now(void);

/* The last VKA_LOG_ERROR message of this thread ("" when none). */
const char *vka_last_error(void);
void vka_clear_error(void);
/* Puts back a last error saved by the caller (after work whose failures are only worth
 * a warning, so that they do not replace the error the caller is about to report). */
void vka_restore_error(const char *msg);

#define vka_err(...) vka_log(VKA_LOG_ERROR, __VA_ARGS__)
#define vka_warn(...) vka_log(VKA_LOG_WARN, __VA_ARGS__)
#define vka_info(...) vka_log(VKA_LOG_INFO, __VA_ARGS__)
#define vka_dbg(...) vka_log(VKA_LOG_DEBUG, __VA_ARGS__)

#endif

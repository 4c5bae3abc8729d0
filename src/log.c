/* Leveled logger: stderr, a level set once by the CLI or the environment
 * (VKACCUM_LOG=error|warn|info|debug), and the last error kept per thread. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

static enum vka_log_level log_level = VKA_LOG_WARN;
static int log_level_from_env = 0;
static _Thread_local char last_error[1024];
static bool keep_errors;
static const char *log_tag; /* "rank 1" in a run of several processes, else NULL */

void vka_log_keep_errors(bool keep)
{
    keep_errors = keep;
}

static void level_from_env(void)
{
    if (log_level_from_env)
        return;
    log_level_from_env = 1;
    const char *s = getenv("VKACCUM_LOG");
    if (!s)
        return;
    static const char *names[] = { "error", "warn", "info", "debug" };
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, names[i]))
            log_level = (enum vka_log_level)i;
}

void vka_log_set_level(enum vka_log_level level)
{
    log_level_from_env = 1;
    log_level = level;
}

enum vka_log_level vka_log_get_level(void)
{
    level_from_env();
    return log_level;
}

void vka_log(enum vka_log_level level, const char *fmt, ...)
{
    static const char *prefix[] = { "error", "warning", "info", "debug" };
    va_list ap;
    if (level == VKA_LOG_ERROR) {
        va_start(ap, fmt);
        vsnprintf(last_error, sizeof(last_error), fmt, ap);
        va_end(ap);
    }
    if (level > vka_log_get_level() || (level == VKA_LOG_ERROR && keep_errors))
        return;
    char line[2048];
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (log_tag)
        fprintf(stderr, "vkaccum: %s: %s: %s\n", log_tag, prefix[level], line);
    else
        fprintf(stderr, "vkaccum: %s: %s\n", prefix[level], line);
}

void vka_log_set_tag(const char *tag)
{
    log_tag = tag;
}

double vka_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const char *vka_last_error(void)
{
    return last_error;
}

void vka_restore_error(const char *msg)
{
    snprintf(last_error, sizeof(last_error), "%s", msg);
}

void vka_clear_error(void)
{
    last_error[0] = '\0';
}

/* mkpoint: writes a recovery point into a datastore directory from image
 * files, as a backup would, for the integration tests (a test:/// VM has no
 * disks to read).
 *
 *   mkpoint DIR VM_UUID POINT_ID TARGET=FILE... [--name VM_NAME] [--domain-xml FILE]
 *
 * DIR is made a datastore (of 4 MiB chunks) when it is empty or missing; an
 * existing one is cut at its own chunk size. Prints the point's
 * chunks (one digest per line, "zero" for an all-zero chunk).
 *
 *   mkpoint --read DIR VM_UUID POINT_ID DISK_INDEX OUT_FILE
 *
 * writes a committed point's disk as a raw image (point_read_disk(), what a
 * restore reads). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "protect/chunkstore.h"

static int die(const char *what, int e) {
        fprintf(stderr, "mkpoint: %s: %s\n", what, strerror(e < 0 ? -e : e));
        return 1;
}

static int read_point(char **argv) {
        ChunkStore *s = NULL;
        int e = chunkstore_open(argv[2], false, &s);
        if (e < 0)
                return die("open", e);
        Point *p = NULL;
        e = point_open(s, argv[3], argv[4], &p);
        if (e < 0)
                return die("point_open", e);
        int fd = open(argv[6], O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0)
                return die(argv[6], errno);
        unsigned disk = (unsigned) atoi(argv[5]);
        e = point_read_disk(s, p, disk, fd, NULL, NULL);
        if (e == 0 && ftruncate(fd, (off_t) point_disk_size(p, disk)) < 0)
                e = -errno;
        close(fd);
        point_free(p);
        chunkstore_free(s);
        return e < 0 ? die("read", e) : 0;
}

int main(int argc, char **argv) {
        if (argc == 7 && strcmp(argv[1], "--read") == 0)
                return read_point(argv);
        if (argc < 5) {
                fprintf(stderr, "usage: mkpoint DIR VM_UUID POINT_ID TARGET=FILE... [--name VM_NAME]\n");
                return 2;
        }
        ChunkStore *s = NULL;
        int e = chunkstore_open(argv[1], true, &s);
        if (e < 0)
                return die("open", e);
        Point *p = NULL;
        e = point_new(s, argv[2], argv[3], NULL, &p);
        if (e < 0)
                return die("point_new", e);
        const size_t cs = chunkstore_chunk_size(s);
        uint8_t *buf = malloc(cs);
        for (int i = 4; i < argc; i++) {
                if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) {
                        json_t *v = json_string(argv[++i]);
                        point_set_meta(p, "vm_name", v);
                        json_decref(v);
                        continue;
                }
                if (strcmp(argv[i], "--domain-xml") == 0 && i + 1 < argc) {
                        /* The VM's definition, as a backup records it (restore reads it). */
                        FILE *f = fopen(argv[++i], "r");
                        if (!f)
                                return die(argv[i], errno);
                        char xml[65536];
                        size_t n = fread(xml, 1, sizeof xml - 1, f);
                        fclose(f);
                        xml[n] = 0;
                        json_t *v = json_string(xml);
                        point_set_meta(p, "domain_xml", v);
                        json_decref(v);
                        continue;
                }
                char *eq = strchr(argv[i], '=');
                if (!eq)
                        return die("argument is not TARGET=FILE", EINVAL);
                *eq = 0;
                int fd = open(eq + 1, O_RDONLY);
                struct stat st;
                if (fd < 0 || fstat(fd, &st) < 0)
                        return die(eq + 1, errno);
                unsigned k;
                e = point_add_disk(p, argv[i], (uint64_t) st.st_size, &k);
                if (e < 0)
                        return die("point_add_disk", e);
                for (uint64_t c = 0; c < point_disk_chunks(p, k); c++) {
                        ssize_t n = pread(fd, buf, cs, (off_t) (c * cs));
                        if (n < 0)
                                return die("read", errno);
                        if (chunk_is_zero(buf, (size_t) n)) {
                                point_set_chunk(p, k, c, NULL);
                                printf("zero\n");
                                continue;
                        }
                        ChunkDigest d;
                        e = chunkstore_put(s, buf, (size_t) n, &d, NULL);
                        if (e < 0)
                                return die("put", e);
                        point_set_chunk(p, k, c, &d);
                        char hex[65];
                        chunk_digest_hex(&d, hex);
                        printf("%s\n", hex);
                }
                close(fd);
        }
        e = point_commit(p);
        if (e < 0)
                return die("commit", e);
        point_free(p);
        chunkstore_free(s);
        free(buf);
        return 0;
}

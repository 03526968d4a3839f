!! Reader and writer of the text format of the original FKB (Ott et al. 2020): see
!! shared/legacy-fkb/README.md and docs/format.md. Both variants are read: the converter's
!! (tab-separated, integer sizes) and the old Fortran `save`'s (padded names, real sizes).
!! Legacy models compute in float32, as the original library did by default.
module fkb_io_legacy
  use iso_fortran_env, only: int64, real32, real64
  use fkb_errors, only: FKB_OK, FKB_ERR_IO, FKB_ERR_FORMAT, FKB_ERR_UNSUPPORTED, &
                        FKB_ERR_MEMORY, set_error
  use fkb_config, only: fkb_config_t, real_text, int_text
  use fkb_tensor, only: FKB_FLOAT32
  use fkb_model, only: fkb_model_t
  use fkb_layer_dense, only: fkb_dense_t
  use fkb_layer_identity, only: fkb_identity_t
  use fkb_layer_batchnorm, only: fkb_batchnorm_t
  use fkb_activation, only: activation_name
  use fkb_text, only: string_t, split_fields, read_line
  use fkb_blas, only: BLAS_INT_MAX
  implicit none
  private
  public :: read_legacy, write_legacy

  character(len=*), parameter :: BLANKS = ' ' // achar(9) // achar(13) // ','
  integer(int64), parameter :: MAX_INIT_PARAMS = 1000000000_int64  !! for files without weights

contains

  subroutine read_legacy(path, model, stat, msg)
    character(len=*), intent(in) :: path
    type(fkb_model_t), intent(out) :: model
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    character(len=256) :: iomsg
    character(len=:), allocatable :: line
    type(string_t), allocatable :: f(:)
    type(string_t), allocatable :: names(:), raws(:)
    real(real64), allocatable :: values(:)
    real(real64) :: lr
    integer(int64) :: n_lines, units
    integer :: u, ios, lineno, i, k, n_dense
    type(fkb_config_t) :: cfg
    logical :: have_weights
    stat = FKB_OK
    model%dtype = FKB_FLOAT32
    open (newunit=u, file=path, status='old', action='read', form='formatted', &
          access='sequential', iostat=ios, iomsg=iomsg)
    if (ios /= 0) then
      call set_error(stat, msg, FKB_ERR_IO, "cannot open '" // path // "': " // trim(iomsg))
      return
    end if
    lineno = 0
    ! Line 1: the number of layer lines.
    if (.not. next_fields(1, 1)) then
      msg = msg // ' (not a .fkb file, nor legacy FKB text whose first line is the number of &
            &layer lines)'
      return
    end if
    if (.not. to_size(f(1)%s, n_lines, 1_int64, 100000_int64)) return
    allocate(names(n_lines), raws(n_lines), values(n_lines))
    do i = 1, int(n_lines)
      if (.not. next_fields(2, 2)) return
      names(i)%s = f(1)%s
      raws(i)%s = f(2)%s
      if (.not. to_real(f(2)%s, values(i))) return
    end do
    ! Build the layers.
    i = 1
    if (names(1)%s /= 'input') then
      call fail(FKB_ERR_FORMAT, "the first layer line must be 'input N'", 2)
      return
    end if
    if (.not. to_size(f_value(1), model%n_in, 1_int64, BLAS_INT_MAX, 2)) return
    call model%add_input([model%n_in], '', stat, msg)
    if (stat /= FKB_OK) return
    n_dense = 0
    i = 2
    do while (i <= n_lines)
      cfg = fkb_config_t()
      select case (names(i)%s)
      case ('dense')
        if (.not. to_size(f_value(i), units, 1_int64, BLAS_INT_MAX, i + 1)) return
        if (i == n_lines) then
          call fail(FKB_ERR_FORMAT, 'a dense layer line must be followed by its activation', &
                    i + 1)
          return
        end if
        call cfg%set('units', int_text(units))
        if (.not. set_activation(names(i + 1)%s, values(i + 1), i + 2)) return
        n_dense = n_dense + 1
        call model%add_layer('dense', 'dense_' // int_text(int(n_dense, int64)), cfg, stat, msg)
        i = i + 2
      case ('dropout')
        call cfg%set('rate', real_text(values(i)))
        call model%add_layer('dropout', 'dropout_' // int_text(int(i, int64)), cfg, stat, msg)
        i = i + 1
      case ('batchnormalization')
        call cfg%set('epsilon', '0.001')
        call cfg%set('center', '1')
        call cfg%set('scale', '1')
        call model%add_layer('batch_normalization', 'batch_normalization_' // &
                             int_text(int(i, int64)), cfg, stat, msg)
        i = i + 1
      case default
        call fail(FKB_ERR_UNSUPPORTED, "unknown layer '" // names(i)%s // "'", i + 1)
        return
      end select
      if (stat /= FKB_OK) then
        msg = "'" // path // "' line " // int_text(int(i, int64)) // ': ' // msg
        close (u)
        return
      end if
    end do
    if (model%n_layers == 0) then
      call fail(FKB_ERR_FORMAT, 'the model has no layers', lineno)
      return
    end if
    ! The learning rate, then the parameters if present.
    if (.not. next_fields(1, 1)) return
    if (.not. to_real(f(1)%s, lr)) return
    call model%set_meta('learning_rate', real_text(lr))
    call read_line(u, line, ios)
    do while (ios == 0 .and. len_trim(line) == 0)
      call read_line(u, line, ios)
    end do
    have_weights = ios == 0
    if (have_weights) then
      backspace (u)
      if (.not. read_parameters()) return
      call read_line(u, line, ios)
      do while (ios == 0)
        if (len_trim(line) > 0) then
          call fail(FKB_ERR_FORMAT, 'unexpected data after the last parameter line', lineno + 1)
          return
        end if
        call read_line(u, line, ios)
      end do
    else
      if (.not. initialise_parameters()) return
      call model%set_meta('weights', 'initialised')
    end if
    close (u)
    call model%set_meta('source', 'legacy FKB text')
    call model%prepare(stat, msg)

  contains

    function f_value(idx) result(text)
      integer, intent(in) :: idx
      character(len=:), allocatable :: text
      text = raws(idx)%s
    end function f_value

    subroutine fail(code, text, at)
      integer, intent(in) :: code
      character(len=*), intent(in) :: text
      integer, intent(in) :: at
      call set_error(stat, msg, code, "'" // path // "' line " // int_text(int(at, int64)) // &
                     ': ' // text)
      close (u)
    end subroutine fail

    logical function next_fields(nmin, nmax)
      ! Reads the next non-blank line into f, checking its number of fields.
      integer, intent(in) :: nmin, nmax
      next_fields = .false.
      do
        call read_line(u, line, ios)
        lineno = lineno + 1
        if (ios /= 0) then
          if (lineno == 1) then
            call fail(FKB_ERR_FORMAT, 'empty file', lineno)
          else
            call fail(FKB_ERR_FORMAT, 'truncated file', lineno)
          end if
          return
        end if
        if (len_trim(line) > 0) exit
      end do
      f = split_fields(line, BLANKS)
      if (size(f) < nmin .or. size(f) > nmax) then
        call fail(FKB_ERR_FORMAT, 'expected ' // int_text(int(nmin, int64)) // &
                  merge('   ', ' to', nmin == nmax) // &
                  merge('', ' ' // int_text(int(nmax, int64)), nmin == nmax) // &
                  ' fields, found ' // int_text(int(size(f), int64)), lineno)
        return
      end if
      next_fields = .true.
    end function next_fields

    logical function to_real(text, x)
      character(len=*), intent(in) :: text
      real(real64), intent(out) :: x
      read (text, *, iostat=ios) x
      to_real = ios == 0
      if (.not. to_real) call fail(FKB_ERR_FORMAT, "'" // text // "' is not a number", lineno)
    end function to_real

    logical function to_size(text, n, lo, hi, at)
      ! A size written as an integer or an integral real ("5.00000000"), finite, in lo..hi.
      character(len=*), intent(in) :: text
      integer(int64), intent(out) :: n
      integer(int64), intent(in) :: lo, hi
      integer, intent(in), optional :: at
      real(real64) :: x
      integer :: where
      where = lineno
      if (present(at)) where = at
      to_size = .false.
      n = 0
      read (text, *, iostat=ios) x
      if (ios /= 0 .or. x /= x) then
        call fail(FKB_ERR_FORMAT, "size '" // text // "' is not a number", where)
        return
      end if
      if (x < real(lo, real64) .or. x > real(hi, real64) .or. x /= aint(x)) then
        call fail(merge(FKB_ERR_MEMORY, FKB_ERR_FORMAT, x > real(hi, real64)), "size '" // &
                  text // "' must be an integer in " // int_text(lo) // '..' // int_text(hi), &
                  where)
        return
      end if
      n = int(x, int64)
      to_size = .true.
    end function to_size

    logical function set_activation(name, alpha, at)
      ! The activation line after a dense line, in the original FKB's spelling.
      character(len=*), intent(in) :: name
      real(real64), intent(in) :: alpha
      integer, intent(in) :: at
      set_activation = .true.
      select case (name)
      case ('leakyrelu')
        call cfg%set('activation', 'leaky_relu')
        call cfg%set('alpha', real_text(alpha))
      case ('linear', 'relu', 'sigmoid', 'tanh', 'softmax', 'softplus', 'softsign', 'selu', &
            'exponential', 'relu6', 'gelu', 'silu', 'mish', 'hard_sigmoid')
        call cfg%set('activation', name)
      case ('swish')
        call cfg%set('activation', 'silu')
      case ('elu')
        call cfg%set('activation', 'elu')
        call cfg%set('alpha', real_text(merge(alpha, 1.0_real64, alpha /= 0)))
      case default
        set_activation = .false.
        call fail(FKB_ERR_UNSUPPORTED, "unsupported activation '" // name // &
                  "' (expected an activation line after the dense line)", at)
      end select
    end function set_activation

    logical function read_parameters()
      ! One bias line per dense layer, one weight line per dense layer, then four lines per
      ! batch normalization: beta, gamma, moving mean, moving variance.
      real(real64), allocatable :: v(:)
      integer :: j
      read_parameters = .false.
      do j = 1, model%n_layers
        select type (l => model%layers(j)%l)
        type is (fkb_dense_t)
          if (.not. read_values(l%n_out, v)) return
          l%params(2)%r32 = real(v, real32)
        end select
      end do
      do j = 1, model%n_layers
        select type (l => model%layers(j)%l)
        type is (fkb_dense_t)
          ! Legacy w(n_in, units) column-major -> Keras kernel (n_in, units) row-major.
          if (.not. read_values(l%n_in * l%n_out, v)) return
          l%params(1)%r32 = real(reshape(transpose(reshape(v, [l%n_in, l%n_out])), &
                                         [l%n_in * l%n_out]), real32)
        end select
      end do
      do j = 1, model%n_layers
        select type (l => model%layers(j)%l)
        type is (fkb_batchnorm_t)
          if (.not. read_values(l%n_in, v)) return
          l%params(2)%r32 = real(v, real32)            ! beta
          if (.not. read_values(l%n_in, v)) return
          l%params(1)%r32 = real(v, real32)            ! gamma
          if (.not. read_values(l%n_in, v)) return
          l%params(3)%r32 = real(v, real32)            ! moving mean
          if (.not. read_values(l%n_in, v)) return
          l%params(4)%r32 = real(v, real32)            ! moving variance
        end select
      end do
      read_parameters = .true.
    end function read_parameters

    logical function read_values(n, v)
      integer(int64), intent(in) :: n
      real(real64), allocatable, intent(out) :: v(:)
      integer :: j
      read_values = .false.
      if (.not. next_fields(1, huge(1))) return
      if (size(f, kind=int64) /= n) then
        call fail(FKB_ERR_FORMAT, 'expected ' // int_text(n) // ' values, found ' // &
                  int_text(size(f, kind=int64)), lineno)
        return
      end if
      allocate(v(n))
      do j = 1, int(n)
        if (.not. to_real(f(j)%s, v(j))) return
      end do
      read_values = .true.
    end function read_values

    logical function initialise_parameters()
      ! No weight lines: Glorot-uniform kernels from a fixed seed, zero biases, identity
      ! batch normalization (what Keras would build), as the original drew random weights.
      integer :: j
      integer(int64) :: total
      integer(int64) :: state
      initialise_parameters = .false.
      total = 0
      do j = 1, model%n_layers
        if (allocated(model%layers(j)%l%params)) then
          do k = 1, size(model%layers(j)%l%params)
            total = total + model%layers(j)%l%params(k)%numel()
          end do
        end if
      end do
      if (total > MAX_INIT_PARAMS) then
        call fail(FKB_ERR_MEMORY, 'refusing to initialise ' // int_text(total) // &
                  ' parameters (absurd size)', lineno)
        return
      end if
      state = 20200423_int64
      do j = 1, model%n_layers
        select type (l => model%layers(j)%l)
        type is (fkb_dense_t)
          allocate(l%params(1)%r32(l%n_in * l%n_out), l%params(2)%r32(l%n_out))
          call glorot(l%params(1)%r32, l%n_in, l%n_out, state)
          l%params(2)%r32 = 0
        type is (fkb_batchnorm_t)
          allocate(l%params(1)%r32(l%n_in), l%params(2)%r32(l%n_in), &
                   l%params(3)%r32(l%n_in), l%params(4)%r32(l%n_in))
          l%params(1)%r32 = 1
          l%params(2)%r32 = 0
          l%params(3)%r32 = 0
          l%params(4)%r32 = 1
        end select
      end do
      initialise_parameters = .true.
    end function initialise_parameters

  end subroutine read_legacy

  subroutine glorot(w, fan_in, fan_out, state)
    !! Glorot-uniform values, from splitmix64 so they do not depend on the compiler.
    real(real32), intent(out) :: w(:)
    integer(int64), intent(in) :: fan_in, fan_out
    integer(int64), intent(inout) :: state
    integer(int64) :: m, z
    real(real64) :: limit
    limit = sqrt(6.0_real64 / real(fan_in + fan_out, real64))
    do m = 1, size(w, kind=int64)
      state = state + (-7046029254386353131_int64)   ! 0x9E3779B97F4A7C15
      z = state
      z = ieor(z, shiftr(z, 30)) * (-4658895280553007687_int64)
      z = ieor(z, shiftr(z, 27)) * (-7723592293110705685_int64)
      z = ieor(z, shiftr(z, 31))
      w(m) = real(limit * (2 * (real(shiftr(z, 11), real64) * 2.0_real64**(-53)) - 1), real32)
    end do
  end subroutine glorot

  subroutine write_legacy(model, path, stat, msg)
    !! Writes a Dense/Dropout/BatchNormalization chain in the original format, with only the
    !! activations the original Fortran knew (it silently replaced unknown ones by sigmoid).
    type(fkb_model_t), intent(in) :: model
    character(len=*), intent(in) :: path
    integer, intent(out) :: stat
    character(len=:), allocatable, intent(inout) :: msg
    character(len=256) :: iomsg
    character(len=:), allocatable :: act, lr, fmtv
    character, parameter :: tab = achar(9)
    integer :: u, ios, j, n_lines
    stat = FKB_OK
    if (.not. model%is_chain() .or. size(model%in_shapes(1)%d) /= 1) then
      call set_error(stat, msg, FKB_ERR_UNSUPPORTED, 'the legacy FKB format holds only chains ' &
                     // 'of layers on rank-1 input; save this model as .fkb')
      return
    end if
    n_lines = 1
    do j = 1, model%n_layers
      select type (l => model%layers(j)%l)
      type is (fkb_dense_t)
        act = activation_name(l%act)
        if (all(act /= [character(len=10) :: 'linear', 'relu', 'leaky_relu', 'sigmoid', &
                        'tanh']) .or. .not. l%use_bias) then
          call refuse(l%name, 'a dense layer with activation ' // act // merge( &
                      ' and no bias', '            ', .not. l%use_bias))
          return
        end if
        n_lines = n_lines + 2
      type is (fkb_identity_t)
        if (l%type_name /= 'dropout') then
          call refuse(l%name, 'a ' // l%type_name // ' layer')
          return
        end if
        n_lines = n_lines + 1
      type is (fkb_batchnorm_t)
        if (abs(l%epsilon - 1e-3_real64) > 1e-12_real64 .or. .not. (l%center .and. l%scale)) then
          call refuse(l%name, 'batch normalization other than epsilon=0.001 with center and &
                      &scale')
          return
        end if
        n_lines = n_lines + 1
      class default
        call refuse(l%name, 'a ' // l%type_name // ' layer')
        return
      end select
    end do
    open (newunit=u, file=path, status='replace', action='write', form='formatted', &
          iostat=ios, iomsg=iomsg)
    if (ios /= 0) then
      call set_error(stat, msg, FKB_ERR_IO, "cannot write '" // path // "': " // trim(iomsg))
      return
    end if
    fmtv = '(*(es16.8e3,:,1x))'
    if (model%dtype /= FKB_FLOAT32) fmtv = '(*(es25.17e3,:,1x))'
    write (u, '(i0)') n_lines
    write (u, '(a,a,i0)') 'input', tab, model%n_in
    do j = 1, model%n_layers
      select type (l => model%layers(j)%l)
      type is (fkb_dense_t)
        write (u, '(a,a,i0)') 'dense', tab, l%n_out
        act = activation_name(l%act)
        if (act == 'leaky_relu') then
          write (u, '(a,a,a)') 'leakyrelu', tab, real_text(l%act%alpha)
        else
          write (u, '(a,a,a)') act, tab, '0'
        end if
      type is (fkb_identity_t)
        write (u, '(a,a,a)') 'dropout', tab, real_text(l%rate)
      type is (fkb_batchnorm_t)
        write (u, '(a,a,a)') 'batchnormalization', tab, '0'
      end select
    end do
    lr = model%get_meta('learning_rate')
    if (len(lr) == 0) lr = '0.001'
    write (u, '(a)') lr
    do j = 1, model%n_layers
      select type (l => model%layers(j)%l)
      type is (fkb_dense_t)
        write (u, fmtv) l%params(2)%values()
      end select
    end do
    do j = 1, model%n_layers
      select type (l => model%layers(j)%l)
      type is (fkb_dense_t)
        write (u, fmtv) transpose(reshape(l%params(1)%values(), [l%n_out, l%n_in]))
      end select
    end do
    do j = 1, model%n_layers
      select type (l => model%layers(j)%l)
      type is (fkb_batchnorm_t)
        write (u, fmtv) l%params(2)%values()
        write (u, fmtv) l%params(1)%values()
        write (u, fmtv) l%params(3)%values()
        write (u, fmtv) l%params(4)%values()
      end select
    end do
    close (u, iostat=ios)
    if (ios /= 0) call set_error(stat, msg, FKB_ERR_IO, "cannot write '" // path // "'")

  contains

    subroutine refuse(name, what)
      character(len=*), intent(in) :: name, what
      call set_error(stat, msg, FKB_ERR_UNSUPPORTED, "layer '" // name // "': " // trim(what) &
                     // ' cannot be written in the legacy FKB text format')
    end subroutine refuse

  end subroutine write_legacy

end module fkb_io_legacy
